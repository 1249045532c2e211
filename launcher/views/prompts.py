from django.shortcuts import render


def prompt_index(request):
    return render(request, "launcher/prompt_index.html")
