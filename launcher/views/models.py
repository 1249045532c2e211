from django.shortcuts import render

from launcher.permissions import staff_required


@staff_required
def model_list(request):
    return render(request, "launcher/model_list.html", {"nav": "models"})
